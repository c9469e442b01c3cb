// Creates an API token for the admin user (JCasC cannot) and writes it, readable
// only by the jenkins user, to $HOME_MLOPS_TOKEN_FILE. start.sh reads it to
// configure `home-mlops jenkins` (HOME_MLOPS_JENKINS_TOKEN). Runs at every start;
// keeps the existing token when the file is already there and the token still exists.
import hudson.model.User
import jenkins.security.ApiTokenProperty

import java.nio.file.Files
import java.nio.file.attribute.PosixFilePermissions

String userId = System.getenv('JENKINS_ADMIN_ID') ?: 'admin'
File out = new File(System.getenv('HOME_MLOPS_TOKEN_FILE') ?: '/var/jenkins_home/secrets/home-mlops-api-token')
String tokenName = 'home-mlops'

User user = User.getById(userId, false)
if (user == null) {
    println "home-mlops: user '${userId}' does not exist (check casc.yaml); no API token written"
    return
}
ApiTokenProperty property = user.getProperty(ApiTokenProperty)
if (property == null) {
    property = new ApiTokenProperty()
    user.addProperty(property)
}
def store = property.tokenStore
boolean known = store.tokenListSortedByName.any { it.name == tokenName }
if (out.exists() && known) {
    println "home-mlops: API token for '${userId}' already in ${out}"
    return
}
if (known) {
    store.tokenListSortedByName.findAll { it.name == tokenName }.each { store.revokeToken(it.uuid) }
}
def generated = store.generateNewToken(tokenName)
user.save()
out.parentFile.mkdirs()
out.text = generated.plainValue
Files.setPosixFilePermissions(out.toPath(), PosixFilePermissions.fromString('rw-------'))
println "home-mlops: API token for '${userId}' written to ${out}"
